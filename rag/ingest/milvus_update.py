"""Building and incrementally updating an index on Milvus (rag.storage.milvus).

The same plan as the embedded store's (rag.ingest.plan.plan_update): only new or changed
articles are encoded, and the chunks of changed and removed articles are deleted by article
id. An update runs under the index's write lock and writes in this order:

1. the meta row says "writing" and lists the articles whose rows go (`pending`): readers
   leave those out from then on, rather than serve them half deleted;
2. their chunk, sentence and article rows are deleted; the new rows are inserted with the
   next generation, which readers do not see yet; the term table is updated;
3. everything is flushed, then the meta row names the new generation "ready": the commit.

A run that finds the meta row "writing" (the last update stopped half-way) first purges the
pending articles and every row of the unfinished generation, recounts the term table from
the chunks, and then updates as usual, re-encoding the pending articles whose files are there.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from rag.config import Config
from rag.encoders.base import Embedder
from rag.errors import IndexWriteError
from rag.ingest.assemble import (
    LEXICAL_INFO,
    article_means,
    embedder_info,
    stored_chunks,
)
from rag.ingest.encode import EncodeBatches, ProgressCallback, embed_articles
from rag.ingest.plan import UpdateReport, plan_update, read_sources
from rag.storage.chunk_table import StoredChunk
from rag.storage.milvus import (
    MILVUS_FORMAT,
    MilvusSettings,
    MilvusStore,
    article_row,
    chunk_row,
    chunk_terms,
    sentence_rows,
    stored_of_record,
)
from rag.storage.snapshot import check_compatible
from rag.text.chunking import split_article

log = logging.getLogger(__name__)


def update_milvus(sources: Sequence[str | Path], settings: MilvusSettings, embedder: Embedder, config: Config,
                  rebuild: bool = False, progress: ProgressCallback | None = None, lock_timeout: float = 60.0,
                  follow_links: bool = False, encode_batches: EncodeBatches | None = None,
                  store: MilvusStore | None = None) -> UpdateReport:
    """rag.ingest.update.build_index for an index on Milvus; `store`, a connection a process
    already holds (a served index), is used and left open instead of connecting anew."""
    own = store is None
    store = store or MilvusStore.connect(settings)
    try:
        meta = store.meta()
        if meta is not None and not rebuild:
            check_compatible(meta, embedder, config, settings.shown)
        with store_lock(store, embedder.dim, lock_timeout):
            roots, loaded = read_sources(sources, config, follow_links, rebuild)
            meta = store.meta()
            if meta is None or rebuild:
                had_index = meta is not None
                meta = new_meta(embedder_info(embedder), config.chunker_settings())
                reset_store(store, embedder.dim, meta, drop=had_index)
            resumed = _resume(store, meta)
            plan = plan_update(loaded, roots, _entries(store, meta["generation"]))
            if not plan.needed and not resumed:
                return plan.report
            split = [split_article(article, embedder.count_tokens, embedder.max_tokens, config)
                     for article in plan.to_embed]
            chunk_vectors, sentence_vectors = embed_articles(plan.to_embed, split, embedder, progress, encode_batches)
            plan.report.chunks_embedded, plan.report.sentences_embedded = len(chunk_vectors), len(sentence_vectors)
            first_chunk, first_sentence = meta["next_ids"]["chunk"], meta["next_ids"]["sentence"]
            chunks = dict(enumerate(stored_chunks(split, first_sentence), start=first_chunk))
            for article, part in zip(plan.to_embed, split, strict=True):
                plan.entries[article.id]["chunks"] = len(part.chunks)
            write_generation(store, meta, plan.entries, gone=plan.gone, chunks=chunks,
                             chunk_vectors=chunk_vectors,
                             sentence_vectors=dict(zip(range(first_sentence, first_sentence + len(sentence_vectors)),
                                                       sentence_vectors, strict=True)),
                             article_vectors=article_means(split, chunk_vectors, embedder.dim))
            log.info("index %s updated: %s", settings.shown, plan.report.summary())
            return plan.report
    finally:
        if own:
            store.close()


def new_meta(embedder: dict[str, Any], chunker: dict[str, Any]) -> dict[str, Any]:
    """The meta row of an empty index. `build` names this build: a rebuild starts the
    generations again, and a reader tells it from the index it holds by this name."""
    return {"format": MILVUS_FORMAT, "embedder": embedder, "chunker": chunker, "lexical": LEXICAL_INFO,
            "build": uuid.uuid4().hex, "generation": 0, "state": "ready", "pending": [], "next_ids": {"chunk": 0, "sentence": 0},
            "counts": {"sentences": 0}, "updated_at": _now()}


@contextmanager
def store_lock(store: MilvusStore, dim: int, timeout: float) -> Iterator[None]:
    """The write lock, taken once the collections exist (the lock is a row of one of them)."""
    from pymilvus import MilvusException

    try:
        store.create(dim)
    except MilvusException as error:
        raise IndexWriteError(f"cannot create the index's collections on {store.settings.shown} ({error.message}): "
                              "check that the token may create collections") from None
    with store.write_lock(timeout):
        yield


def reset_store(store: MilvusStore, dim: int, meta: dict[str, Any], drop: bool) -> None:
    """Start an empty index described by `meta`, keeping the lock row. With `drop` (an index
    was there: a rebuild, maybe for another model's dimension) its collections are made anew;
    otherwise the lock has just created them empty."""
    if drop:
        for name in ("chunks", "sentences", "articles", "terms"):
            store.client.drop_collection(store.name(name))
        store.create(dim)
    store.put_meta("index", meta)


def _entries(store: MilvusStore, generation: int) -> dict[str, dict[str, Any]]:
    return {row["article_id"]: json.loads(row["entry"])
            for row in store.scan("articles", ["article_id", "entry"], f"generation <= {generation}")}


def _resume(store: MilvusStore, meta: dict[str, Any]) -> bool:
    """Undo what an update that stopped half-way wrote (see the module's docstring); whether
    there was one."""
    if meta.get("state") != "writing":
        return False
    log.warning("the last update of %s stopped half-way; finishing it", store.settings.shown)
    pending = list(meta.get("pending", ()))
    newer = f"generation > {meta['generation']}"
    for name in ("chunks", "sentences", "articles"):
        store.client.delete(store.name(name), filter=newer)
        for start in range(0, len(pending), 1000):
            store.client.delete(store.name(name), filter=f"article_id in {json.dumps(pending[start:start + 1000])}")
    store.client.drop_collection(store.name("terms"))
    store.create(meta["embedder"]["dim"])
    counts = chunk_terms(stored_of_record(row["record"]).chunk for row in store.scan("chunks", ["record"]))
    store.insert("terms", [_term_row(term, count) for term, count in counts.items()])
    meta.update(state="ready", pending=[])
    store.flush()
    store.put_meta("index", meta)
    return True


def write_generation(store: MilvusStore, meta: dict[str, Any], entries: dict[str, dict[str, Any]], gone: set[str],
                     chunks: dict[int, StoredChunk], chunk_vectors: np.ndarray, sentence_vectors: dict[int, np.ndarray],
                     article_vectors: dict[str, np.ndarray]) -> None:
    """Replace the rows of the `gone` articles by the given chunks, sentences and articles as
    the next generation, and commit it (the order is the module docstring's). `entries` is
    the whole article table afterwards; `chunk_vectors` follow `chunks` in id order."""
    generation = meta["generation"] + 1
    meta.update(state="writing", pending=sorted(gone))
    store.put_meta("index", meta)
    gone_list = sorted(gone)
    removed_terms: dict[str, int] = {}
    for start in range(0, len(gone_list), 1000):
        part = json.dumps(gone_list[start:start + 1000])
        leaving = [stored_of_record(row["record"]).chunk for row in store.scan("chunks", ["record"], f"article_id in {part}")]
        for term, count in chunk_terms(leaving).items():
            removed_terms[term] = removed_terms.get(term, 0) + count
        for name in ("chunks", "sentences", "articles"):
            store.client.delete(store.name(name), filter=f"article_id in {part}")
    chunk_rows = [chunk_row(chunk_id, stored, vector, generation)
                  for (chunk_id, stored), vector in zip(sorted(chunks.items()), chunk_vectors, strict=True)]
    store.insert("chunks", chunk_rows)
    store.insert("sentences", sentence_rows(chunks, sentence_vectors, generation))
    store.insert("articles", [article_row(article_id, entries[article_id], vector, generation)
                              for article_id, vector in article_vectors.items()], upsert=True)
    _move_entries(store, entries, skip=set(article_vectors))
    _update_terms(store, chunk_terms(stored.chunk for stored in chunks.values()), removed_terms)
    store.flush()
    sentences = store.client.query(store.name("sentences"), filter="", output_fields=["count(*)"],
                                   consistency_level="Strong")[0]["count(*)"]
    meta.update(generation=generation, state="ready", pending=[], updated_at=_now(), counts={"sentences": sentences},
                next_ids={"chunk": max(chunks, default=meta["next_ids"]["chunk"] - 1) + 1,
                          "sentence": max(sentence_vectors, default=meta["next_ids"]["sentence"] - 1) + 1})
    store.put_meta("index", meta)


def _move_entries(store: MilvusStore, entries: dict[str, dict[str, Any]], skip: set[str]) -> None:
    """Rewrite the article rows whose entry changed without new vectors (a file moved)."""
    kept = [article_id for article_id in entries if article_id not in skip]
    for start in range(0, len(kept), 1000):
        rows = store.client.query(store.name("articles"), filter=f"article_id in {json.dumps(kept[start:start + 1000])}",
                                  output_fields=["article_id", "entry", "generation", "vector"],
                                  consistency_level="Strong")
        changed = [article_row(row["article_id"], entries[row["article_id"]], np.asarray(row["vector"], np.float32),
                               row["generation"])
                   for row in rows if json.loads(row["entry"]) != entries[row["article_id"]]]
        if changed:
            store.insert("articles", changed, upsert=True)


def _update_terms(store: MilvusStore, added: dict[str, int], removed: dict[str, int]) -> None:
    changed = sorted(set(added) | set(removed))
    current: dict[str, int] = {}
    for start in range(0, len(changed), 1000):
        for row in store.client.query(store.name("terms"), filter=f"term in {json.dumps(changed[start:start + 1000])}",
                                      output_fields=["term", "df"], consistency_level="Strong"):
            current[row["term"]] = int(row["df"])
    counts = {term: current.get(term, 0) + added.get(term, 0) - removed.get(term, 0) for term in changed}
    store.insert("terms", [_term_row(term, count) for term, count in counts.items() if count > 0], upsert=True)
    dropped = [term for term, count in counts.items() if count <= 0]
    for start in range(0, len(dropped), 1000):
        store.client.delete(store.name("terms"), filter=f"term in {json.dumps(dropped[start:start + 1000])}")


def _term_row(term: str, count: int) -> dict[str, Any]:
    return {"term": term, "df": int(count), "placeholder": [0.0, 0.0]}


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
