"""The index on Milvus: a cluster (`http(s)://host:19530`) or milvus-lite (`milvus-lite:PATH`).

For archives past what one machine holds (docs/scale.md). Milvus holds what the embedded
store holds, in five collections named `<prefix>_<name>`:

- chunks: id, article id, content hash, date as a day number plus a has-date flag (Milvus
  2.5 has no nullable fields), the chunk record (text, title, offsets, sentence ids and
  spans) as JSON, the dense vector, and `lexical`: the chunk's terms exactly as
  rag.text.normalize makes them (stemmed, diacritics folded, British spelling made
  American), one token each (`milvus_terms`), which Milvus's own BM25 scores (k1 0.9, b 0.4,
  as the embedded store), so both stores match the same terms;
- sentences: id, article id, date, the chunks holding it, the dense vector;
- articles: id, its manifest entry (title, date, source, content hash, chunks) as JSON and
  its vector, for incremental diffs and the article score;
- terms: each term and how many chunks hold it (typo correction and answer coverage weigh
  words by it; Milvus does not expose its BM25 statistics);
- meta: the index's description (model, chunker, next ids), its committed generation, and
  the write lock.

Every row carries the generation that wrote it, and readers search `generation <= committed`:
an update's new rows stay invisible until it commits by writing the meta row. Milvus
requires a vector field in every collection, so terms and meta carry a 2-dimensional
placeholder. Searching and answering read through rag.storage.reader, like the embedded store.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import socket
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from rag.errors import (
    ConfigError,
    IndexBusyError,
    IndexCorruptError,
    IndexNotFoundError,
    IndexWriteError,
    RagError,
)
from rag.records import Chunk, SearchFilter, iso_date
from rag.storage.chunk_table import StoredChunk, sentences_in_order
from rag.storage.lexical import LexicalIndex, lexical_text, lucene_idf, typo_candidates
from rag.text.normalize import terms

LITE_PREFIX = "milvus-lite:"
MILVUS_FORMAT = 1
_EPOCH = dt.date(1970, 1, 1)
_PLACEHOLDER_DIM = 2
_BATCH = 1000  # rows per insert: milvus-lite slows past 5,000-row batches
_MAX_TEXT = 65_535  # Milvus's VARCHAR limit, in characters
_SEPARATORS = re.compile(r"[^a-z0-9]")
COLLECTIONS = ("chunks", "sentences", "articles", "terms", "meta")


def is_milvus_uri(store: str | Path) -> bool:
    """Whether `--store` names a Milvus store rather than an index folder."""
    text = str(store)
    return text.startswith((LITE_PREFIX, "http://", "https://"))


@dataclass(frozen=True)
class MilvusSettings:
    """How to reach Milvus and search it; each has an environment variable (README).

    `index_type` is the dense index (HNSW by default; IVF_FLAT or FLAT), built with `hnsw_m`
    and `hnsw_ef_construction` or `ivf_nlist`; `ef` and `nprobe` are search depths, raised to
    the number of results asked for when smaller. `token` authenticates against a cluster.
    `tokenizer` splits the BM25 text, which holds rag's own terms joined by spaces
    (`milvus_terms`): "whitespace" on a cluster; milvus-lite has only "standard", which keeps
    each term whole too. Neither stems or drops words: rag.text.normalize has done that.
    """

    def __post_init__(self) -> None:
        if not self.tokenizer:
            object.__setattr__(self, "tokenizer", "standard" if self.lite else "whitespace")

    uri: str
    token: str = ""
    prefix: str = "rag"
    index_type: str = "HNSW"
    hnsw_m: int = 16
    hnsw_ef_construction: int = 200
    ivf_nlist: int = 1024
    ef: int = 128
    nprobe: int = 32
    tokenizer: str = ""

    @classmethod
    def from_uri(cls, store: str, environ: Mapping[str, str] | None = None) -> MilvusSettings:
        """Settings for `store` (`milvus-lite:PATH` or `http(s)://host:port`) with the
        RAG_MILVUS_* environment variables applied; a bad value is refused with its fix."""
        env = os.environ if environ is None else environ
        if store.startswith(LITE_PREFIX):
            path = store[len(LITE_PREFIX):]
            if not path:
                raise ConfigError(f"the store {store!r} names no file: give one, as milvus-lite:/tmp/rag.db")
            uri = str(Path(path).expanduser().resolve())
        else:
            uri = store
        index_type = env.get("RAG_MILVUS_INDEX", cls.index_type).upper()
        if index_type not in ("HNSW", "IVF_FLAT", "FLAT"):
            raise ConfigError(f"RAG_MILVUS_INDEX must be HNSW, IVF_FLAT or FLAT, got {index_type!r}")
        prefix = env.get("RAG_MILVUS_PREFIX", cls.prefix)
        if not (prefix[:1].isalpha() and prefix.replace("_", "").isalnum()):
            raise ConfigError(f"RAG_MILVUS_PREFIX must be letters, digits and _, starting with a letter, got {prefix!r}")
        numbers = {}
        for name, variable in (("ef", "RAG_MILVUS_EF"), ("nprobe", "RAG_MILVUS_NPROBE"), ("hnsw_m", "RAG_MILVUS_HNSW_M"),
                               ("hnsw_ef_construction", "RAG_MILVUS_EF_CONSTRUCTION"),
                               ("ivf_nlist", "RAG_MILVUS_NLIST")):
            if variable in env:
                try:
                    numbers[name] = int(env[variable])
                except ValueError:
                    raise ConfigError(f"{variable} must be a whole number, got {env[variable]!r}") from None
                if numbers[name] < 1:
                    raise ConfigError(f"{variable} must be at least 1, got {numbers[name]}")
        tokenizer = env.get("RAG_MILVUS_TOKENIZER", "")
        if tokenizer not in ("", "standard", "whitespace"):
            raise ConfigError(f"RAG_MILVUS_TOKENIZER must be standard or whitespace, got {tokenizer!r}")
        return cls(uri=uri, token=env.get("RAG_MILVUS_TOKEN", ""), prefix=prefix, index_type=index_type,
                   tokenizer=tokenizer, **numbers)

    def search_params(self, depth: int) -> dict[str, Any]:
        """The dense search's parameters, its depth at least the number of results asked for."""
        params: dict[str, Any] = {}
        if self.index_type == "HNSW":
            params["ef"] = max(self.ef, depth)
        elif self.index_type == "IVF_FLAT":
            params["nprobe"] = self.nprobe
        return {"metric_type": "IP", "params": params}

    @property
    def lite(self) -> bool:
        return not self.uri.startswith(("http://", "https://"))

    @property
    def shown(self) -> str:
        """The store as the user names it."""
        return f"{LITE_PREFIX}{self.uri}" if self.lite else self.uri


def _day(date: str | None) -> tuple[int, bool]:
    """A date as (days since 1970-01-01, has a date)."""
    return ((dt.date.fromisoformat(date) - _EPOCH).days, True) if date else (0, False)


def filter_expression(search_filter: SearchFilter, generation: int, hidden: Sequence[str] = ()) -> str:
    """The Milvus boolean expression of a filter over rows of the committed generation,
    leaving out `hidden` articles (those an unfinished update is replacing)."""
    parts = [f"generation <= {generation}"]
    if hidden:
        parts.append(f"not (article_id in {json.dumps(sorted(hidden))})")
    if search_filter.articles is not None:
        parts.append(f"article_id in {json.dumps(sorted(search_filter.articles))}")
    if search_filter.has_date_bound:
        bounds = ["has_date == true"]
        if search_filter.date_from is not None:
            bounds.append(f"day >= {(search_filter.date_from - _EPOCH).days}")
        if search_filter.date_to is not None:
            bounds.append(f"day <= {(search_filter.date_to - _EPOCH).days}")
        dated = " and ".join(bounds)
        parts.append(f"(({dated}) or has_date == false)" if search_filter.include_undated else f"({dated})")
    return " and ".join(parts)


class MilvusStore:
    """A connection to the collections of one index on Milvus, for reading and writing."""

    def __init__(self, settings: MilvusSettings, client: Any) -> None:
        self.settings = settings
        self.client = client

    @classmethod
    def connect(cls, settings: MilvusSettings) -> MilvusStore:
        """Connect, saying plainly what is wrong when Milvus cannot be reached or opened."""
        try:
            from pymilvus import MilvusClient, MilvusException
        except ModuleNotFoundError as error:
            raise ConfigError(f"a Milvus store needs the package {error.name!r}, which is not installed: "
                              "pip install -e '.[milvus]' (make setup installs it)") from error
        logging.getLogger("pymilvus").setLevel(logging.ERROR)  # it warns of its own fallbacks on every scan
        if settings.lite:
            Path(settings.uri).parent.mkdir(parents=True, exist_ok=True)
            # milvus-lite's in-process server logs a traceback for each call it lacks (a scan
            # asks for a timestamp first, then falls back), and its launcher one for a file
            # another process holds, which is said below in one line.
            for noisy in ("grpc._server", "milvus_lite"):
                logging.getLogger(noisy).setLevel(logging.CRITICAL)
        try:
            client = MilvusClient(uri=settings.uri, token=settings.token or "", timeout=30)
        except MilvusException as error:
            text = error.message
            if "Open local milvus failed" in text:
                raise IndexBusyError(
                    f"the Milvus store {settings.shown} is open in another process (milvus-lite lets one "
                    "process open a file): stop it or wait for it to finish and try again") from None
            raise IndexNotFoundError(f"cannot reach Milvus at {settings.shown} ({text}): check the address, that "
                                     "Milvus is running, and RAG_MILVUS_TOKEN") from None
        store = cls(settings, client)
        store.load()
        return store

    def load(self) -> None:
        """Load the index's collections into memory: Milvus searches only loaded ones, and a
        restarted server (or a reopened milvus-lite file) starts with none loaded."""
        for name in COLLECTIONS:
            if self.client.has_collection(self.name(name)):
                self.client.load_collection(self.name(name))

    def close(self) -> None:
        """Close the connection; for milvus-lite also stop its server, so that another
        client (or process) can open the file."""
        self.client.close()
        if self.settings.lite:
            from milvus_lite import server_manager_instance

            server_manager_instance.release_server(self.settings.uri)

    def name(self, collection: str) -> str:
        return f"{self.settings.prefix}_{collection}"

    # --- the meta row -----------------------------------------------------------------

    def meta(self) -> dict[str, Any] | None:
        """The index's description, or None if no index was written here."""
        if not self.client.has_collection(self.name("meta")):
            return None
        rows = self.client.query(self.name("meta"), filter='key == "index"', output_fields=["value"],
                                 consistency_level="Strong")
        return json.loads(rows[0]["value"]) if rows else None

    def put_meta(self, key: str, value: dict[str, Any]) -> None:
        self.client.upsert(self.name("meta"), [{"key": key, "value": json.dumps(value),
                                                "placeholder": [0.0] * _PLACEHOLDER_DIM}])
        self.client.flush(self.name("meta"))

    def _get_meta(self, key: str) -> dict[str, Any] | None:
        rows = self.client.query(self.name("meta"), filter=f"key == {json.dumps(key)}", output_fields=["value"],
                                 consistency_level="Strong")
        return json.loads(rows[0]["value"]) if rows else None

    @contextmanager
    def write_lock(self, timeout: float) -> Iterator[None]:
        """Hold the index's write lock: a row in meta naming its holder. A writer on this host
        whose process is gone left a stale row, which is taken over; any other holder is
        waited for up to `timeout` seconds, then IndexBusyError, as for an index folder.
        Milvus has no conditional write, so the row is written and read back: two writers
        starting within the same few milliseconds could both pass, which a deployment avoids
        by running one indexer (milvus-lite lets one process open a file at all)."""
        token = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}
        deadline = time.monotonic() + timeout
        while True:
            holder = self._get_meta("lock")
            if holder is None or _is_stale(holder):
                self.put_meta("lock", token)
                if self._get_meta("lock") == token:
                    break
            elif time.monotonic() >= deadline:
                raise IndexBusyError(
                    f"another process is updating the index at {self.settings.shown} (pid {holder['pid']} on "
                    f"{holder['host']}, lock held for {timeout:g} s): wait for it to finish and try again")
            time.sleep(0.5)
        try:
            yield
        finally:
            self.client.delete(self.name("meta"), filter='key == "lock"')
            self.client.flush(self.name("meta"))

    # --- collections ----------------------------------------------------------------

    def create(self, dim: int) -> None:
        """Create the collections that do not exist yet."""
        from pymilvus import DataType, Function, FunctionType

        client = self.client

        def make(name: str, fields: list[tuple], vector_index: tuple[str, int] | None, bm25: bool = False) -> None:
            if client.has_collection(self.name(name)):
                return
            schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
            for field_name, kind, options in fields:
                schema.add_field(field_name, kind, **options)
            if bm25:
                schema.add_function(Function(name="bm25", function_type=FunctionType.BM25,
                                             input_field_names=["lexical"], output_field_names=["sparse"]))
            index_params = client.prepare_index_params()
            vector_field, vector_dim = vector_index or ("placeholder", _PLACEHOLDER_DIM)
            if vector_dim == dim:
                index_params.add_index(field_name=vector_field, index_type=self.settings.index_type,
                                       metric_type="IP", params=self._index_params(self._dense_build_params()))
            else:
                index_params.add_index(field_name=vector_field, index_type="FLAT", metric_type="L2",
                                       params=self._index_params({}))
            if bm25:
                index_params.add_index(field_name="sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25",
                                       params=self._index_params({"bm25_k1": LexicalIndex.PARAMS["k1"],
                                                                  "bm25_b": LexicalIndex.PARAMS["b"]}))
            client.create_collection(self.name(name), schema=schema, consistency_level="Strong")
            client.create_index(self.name(name), index_params, sync=False)  # create_collection waits 0.5 s an index
            client.load_collection(self.name(name))

        text = {"max_length": _MAX_TEXT}
        article = ("article_id", DataType.VARCHAR, {"max_length": 1024})
        dated = [("generation", DataType.INT64, {}), ("day", DataType.INT64, {}), ("has_date", DataType.BOOL, {})]
        placeholder = ("placeholder", DataType.FLOAT_VECTOR, {"dim": _PLACEHOLDER_DIM})
        make("meta", [("key", DataType.VARCHAR, {"max_length": 64, "is_primary": True}),
                      ("value", DataType.VARCHAR, text), placeholder], None)
        make("terms", [("term", DataType.VARCHAR, {"max_length": 512, "is_primary": True}),
                       ("df", DataType.INT64, {}), placeholder], None)
        make("articles", [("article_id", DataType.VARCHAR, {"max_length": 1024, "is_primary": True}),
                          ("entry", DataType.VARCHAR, text), ("generation", DataType.INT64, {}),
                          ("vector", DataType.FLOAT_VECTOR, {"dim": dim})], ("vector", dim))
        make("sentences", [("id", DataType.INT64, {"is_primary": True}), article, *dated,
                           ("owners", DataType.VARCHAR, {"max_length": 1024}),
                           ("vector", DataType.FLOAT_VECTOR, {"dim": dim})], ("vector", dim))
        make("chunks", [("id", DataType.INT64, {"is_primary": True}), article,
                        ("hash", DataType.VARCHAR, {"max_length": 128}), *dated, ("record", DataType.VARCHAR, text),
                        ("vector", DataType.FLOAT_VECTOR, {"dim": dim}),
                        ("lexical", DataType.VARCHAR, {**text, "enable_analyzer": True,
                                                        "analyzer_params": {"tokenizer": self.settings.tokenizer}}),
                        ("sparse", DataType.SPARSE_FLOAT_VECTOR, {})], ("vector", dim), bm25=True)

    def drop(self) -> None:
        for name in COLLECTIONS:
            self.client.drop_collection(self.name(name))

    def _dense_build_params(self) -> dict[str, Any]:
        if self.settings.index_type == "HNSW":
            return {"M": self.settings.hnsw_m, "efConstruction": self.settings.hnsw_ef_construction}
        if self.settings.index_type == "IVF_FLAT":
            return {"nlist": self.settings.ivf_nlist}
        return {}

    def _index_params(self, params: dict[str, Any]) -> dict[str, Any]:
        """milvus-lite 3.2 reads build parameters one level down; a cluster reads them as given."""
        return {"params": params} if self.settings.lite else params

    def flush(self) -> None:
        for name in COLLECTIONS:
            self.client.flush(self.name(name))

    # --- reading many rows ----------------------------------------------------------

    def scan(self, collection: str, output_fields: list[str], expression: str = "") -> Iterator[dict[str, Any]]:
        """Every row matching the expression, in batches (a query returns at most 16,384 rows)."""
        iterator = self.client.query_iterator(self.name(collection), batch_size=1000, filter=expression,
                                              output_fields=output_fields, consistency_level="Strong")
        try:
            while batch := iterator.next():
                yield from batch
        finally:
            iterator.close()

    def rows_by_id(self, collection: str, ids: Iterable[int], output_fields: list[str]) -> dict[int, dict[str, Any]]:
        ids = [int(i) for i in ids]
        found: dict[int, dict[str, Any]] = {}
        for start in range(0, len(ids), _BATCH):
            part = ids[start:start + _BATCH]
            for row in self.client.query(self.name(collection), filter=f"id in {part}",
                                         output_fields=["id", *output_fields], consistency_level="Strong"):
                found[int(row["id"])] = row
        return found

    def insert(self, collection: str, rows: list[dict[str, Any]], upsert: bool = False) -> None:
        write = self.client.upsert if upsert else self.client.insert
        for start in range(0, len(rows), _BATCH):
            write(self.name(collection), rows[start:start + _BATCH])


def _is_stale(holder: dict[str, Any]) -> bool:
    """Whether a lock row was left by a process of this host that is gone."""
    if holder.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(holder["pid"]), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, ValueError, KeyError):
        return False
    return False


# --- rows ---------------------------------------------------------------------------


def chunk_row(chunk_id: int, stored: StoredChunk, vector: np.ndarray, generation: int) -> dict[str, Any]:
    chunk = stored.chunk
    day, has_date = _day(iso_date(chunk.date))
    record = json.dumps({**chunk.to_json(), "sentence_ids": stored.sentence_ids,
                         "sentence_spans": stored.sentence_spans}, ensure_ascii=False)
    lexical = milvus_terms(terms(lexical_text(chunk)))
    if len(record) > _MAX_TEXT or len(lexical) > _MAX_TEXT:
        raise IndexWriteError(f"a chunk of article {chunk.article_id!r} is longer than a Milvus text field holds "
                              f"({_MAX_TEXT} characters): index with a smaller chunk size")
    return {"id": int(chunk_id), "article_id": chunk.article_id, "hash": chunk.chunk_id, "generation": generation,
            "day": day, "has_date": has_date, "record": record, "vector": vector.tolist(), "lexical": lexical}


def milvus_terms(words: Iterable[str]) -> str:
    """Terms as Milvus's analyzer must see them: each one token. milvus-lite has only the
    "standard" (Unicode word-break) tokenizer, which would split "57-nq/tw" in three, so the
    separators inside a term become "_", which joins words; terms hold no "_" of their own."""
    return " ".join(_SEPARATORS.sub("_", word) for word in words)


def stored_of_record(record: str) -> StoredChunk:
    fields = json.loads(record)
    return StoredChunk(chunk=Chunk.from_json(fields), sentence_ids=tuple(fields["sentence_ids"]),
                       sentence_spans=tuple(tuple(span) for span in fields["sentence_spans"]))


def sentence_rows(chunks: dict[int, StoredChunk], vectors: dict[int, np.ndarray],
                  generation: int) -> list[dict[str, Any]]:
    """A row per sentence of the given chunks, naming every chunk that holds it."""
    owners: dict[int, list[int]] = {}
    article: dict[int, Chunk] = {}
    for chunk_id, stored in chunks.items():
        for sentence_id in stored.sentence_ids:
            owners.setdefault(sentence_id, []).append(int(chunk_id))
            article[sentence_id] = stored.chunk
    rows = []
    for sentence_id in sorted(owners):
        chunk = article[sentence_id]
        day, has_date = _day(iso_date(chunk.date))
        rows.append({"id": int(sentence_id), "article_id": chunk.article_id, "generation": generation, "day": day,
                     "has_date": has_date, "owners": json.dumps(sorted(owners[sentence_id])),
                     "vector": vectors[sentence_id].tolist()})
    return rows


def article_row(article_id: str, entry: dict[str, Any], vector: np.ndarray, generation: int) -> dict[str, Any]:
    return {"article_id": article_id, "entry": json.dumps(entry, ensure_ascii=False), "generation": generation,
            "vector": vector.tolist()}


def chunk_terms(chunks: Iterable[Chunk]) -> dict[str, int]:
    """How many of the given chunks hold each term (as the embedded store's BM25 counts it)."""
    counts: dict[str, int] = {}
    for chunk in chunks:
        for term in set(terms(lexical_text(chunk))):
            counts[term] = counts.get(term, 0) + 1
    return counts


# --- reading ------------------------------------------------------------------------


class TermTable:
    """The terms of a Milvus index and their document frequencies (rag.storage.reader.Lexicon),
    with Lucene's idf over the committed chunks, as the embedded store's LexicalIndex."""

    def __init__(self, frequencies: dict[str, int], documents: int) -> None:
        self.frequencies = frequencies
        self.documents = documents

    def knows(self, term: str) -> bool:
        return self.frequencies.get(term, 0) > 0

    def document_frequency(self, term: str) -> int:
        return self.frequencies.get(term, 0)

    def idf(self, query_terms: Sequence[str]) -> np.ndarray:
        return lucene_idf(np.array([self.frequencies.get(t, 0) for t in query_terms], dtype=np.float32), self.documents)

    @cached_property
    def terms_by_length(self) -> dict[int, list[str]]:
        return typo_candidates(self.frequencies.items())


class _Cache(OrderedDict):
    """At most `size` entries, the least recently added dropped first."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def put(self, key: Any, value: Any) -> None:
        self[key] = value
        if len(self) > self.size:
            self.popitem(last=False)

    def get_many(self, keys: Iterable[Any], load: Callable[[list[Any]], dict[Any, Any]]) -> dict[Any, Any]:
        """The values of `keys`, those not cached got with `load` (which may leave out keys it
        cannot find) and cached. Returned from a dict of their own, so that a call needing more
        than the cache holds, or a concurrent call, cannot evict them before they are read."""
        unique = list(dict.fromkeys(keys))
        found = {}
        for key in unique:
            value = self.get(key)
            if value is not None:
                found[key] = value
        missing = [key for key in unique if key not in found]
        if missing:
            loaded = load(missing)
            for key, value in loaded.items():
                self.put(key, value)
            found.update(loaded)
        return found


@dataclass
class MilvusReader:
    """One committed generation of a Milvus index, read through rag.storage.reader.IndexReader.

    Searches run on Milvus; the records and vectors of the chunks a query ranks are fetched
    by id and kept in a bounded cache. The article table and the term table are read when it
    is opened (they are small beside the chunks: one row per article and per term).
    """

    store: MilvusStore
    meta: dict[str, Any]
    manifest: dict[str, Any]
    lexicon: TermTable
    hidden: tuple[str, ...] = ()
    _chunks: _Cache = field(default_factory=lambda: _Cache(20_000))
    _by_hash: _Cache = field(default_factory=lambda: _Cache(20_000))
    _sentences: _Cache = field(default_factory=lambda: _Cache(50_000))
    _articles: _Cache = field(default_factory=lambda: _Cache(10_000))
    _article_sentences: _Cache = field(default_factory=lambda: _Cache(1_000))

    @classmethod
    def open(cls, store: MilvusStore) -> MilvusReader:
        meta = store.meta()
        if meta is None:
            raise IndexNotFoundError(f"no index at {store.settings.shown}: build one with "
                                     f"`rag index --store {store.settings.shown}`")
        if meta.get("format") != MILVUS_FORMAT:
            raise IndexCorruptError(f"the index at {store.settings.shown} has format {meta.get('format')!r}; this "
                                    f"version of rag reads format {MILVUS_FORMAT}: rebuild it with "
                                    f"`rag index --rebuild --store {store.settings.shown}`")
        generation = meta["generation"]
        hidden = tuple(meta.get("pending", ())) if meta.get("state") == "writing" else ()
        entries = {row["article_id"]: json.loads(row["entry"])
                   for row in store.scan("articles", ["article_id", "entry"], f"generation <= {generation}")
                   if row["article_id"] not in hidden}
        frequencies = {row["term"]: int(row["df"]) for row in store.scan("terms", ["term", "df"])}
        chunks = sum(entry["chunks"] for entry in entries.values())
        manifest = {**{key: meta[key] for key in ("embedder", "chunker", "lexical", "updated_at")},
                    "articles": dict(sorted(entries.items())),
                    "counts": {"articles": len(entries), "chunks": chunks, "sentences": meta["counts"]["sentences"]},
                    "segments": [], "vector_search": {"chunks": f"milvus {store.settings.index_type}",
                                                      "sentences": f"milvus {store.settings.index_type}"}}
        return cls(store=store, meta=meta, manifest=manifest, lexicon=TermTable(frequencies, max(chunks, 1)),
                   hidden=hidden)

    @property
    def name(self) -> str:
        return f"generation-{self.meta['generation']}"

    @property
    def dim(self) -> int:
        return int(self.meta["embedder"]["dim"])

    @property
    def chunk_count(self) -> int:
        return int(self.manifest["counts"]["chunks"])

    def _expression(self, search_filter: SearchFilter) -> str:
        return filter_expression(search_filter, self.meta["generation"], self.hidden)

    def _dense(self, collection: str, query_vector: np.ndarray, depth: int, search_filter: SearchFilter,
               output_fields: list[str]) -> list[dict[str, Any]]:
        found = self.store.client.search(
            self.store.name(collection), data=[query_vector.astype(np.float32).tolist()], anns_field="vector",
            limit=depth, filter=self._expression(search_filter), output_fields=output_fields,
            search_params=self.store.settings.search_params(depth), consistency_level="Strong")
        return list(found[0])

    def dense_chunks(self, query_vector: np.ndarray, depth: int, search_filter: SearchFilter) -> np.ndarray:
        return np.array([hit["id"] for hit in self._dense("chunks", query_vector, depth, search_filter, ["id"])],
                        dtype=np.int64)

    def dense_sentence_chunks(self, query_vector: np.ndarray, depth: int, search_filter: SearchFilter) -> np.ndarray:
        hits = self._dense("sentences", query_vector, depth, search_filter, ["owners"])
        return np.array([owner for hit in hits for owner in json.loads(hit["entity"]["owners"])], dtype=np.int64)

    def lexical_scores(self, query_terms: Sequence[str], weights: Sequence[float],
                       search_filter: SearchFilter) -> MilvusLexicalScores:
        return MilvusLexicalScores(self, query_terms, weights, self._expression(search_filter))

    def _chunk_rows(self, chunk_ids: Iterable[int]) -> list[tuple[StoredChunk, np.ndarray]]:
        ids = [int(i) for i in chunk_ids]
        rows = self._chunks.get_many(ids, self._load_chunks)
        return [rows[i] if i in rows else self._gone("chunk", i) for i in ids]

    def _load_chunks(self, chunk_ids: list[int]) -> dict[int, tuple[StoredChunk, np.ndarray]]:
        loaded = {}
        for chunk_id, row in self.store.rows_by_id("chunks", chunk_ids, ["record", "vector"]).items():
            stored = stored_of_record(row["record"])
            loaded[chunk_id] = (stored, np.asarray(row["vector"], dtype=np.float32))
            self._by_hash.put((stored.chunk.article_id, stored.chunk.chunk_id), chunk_id)
        return loaded

    def _gone(self, what: str, key: Any) -> NoReturn:
        raise IndexCorruptError(f"{what} {key} of the index at {self.store.settings.shown} is gone; it was changed "
                                "while being read: ask again")

    def chunk_vectors_of(self, chunk_ids: np.ndarray) -> np.ndarray:
        return np.array([vector for _, vector in self._chunk_rows(chunk_ids.tolist())],
                        dtype=np.float32).reshape(-1, self.dim)

    def sentence_vectors_of(self, sentence_ids: np.ndarray) -> np.ndarray:
        ids = [int(i) for i in sentence_ids.tolist()]
        vectors = self._sentences.get_many(ids, lambda missing: {
            sentence_id: np.asarray(row["vector"], dtype=np.float32)
            for sentence_id, row in self.store.rows_by_id("sentences", missing, ["vector"]).items()})
        return np.array([vectors[i] if i in vectors else self._gone("sentence", i) for i in ids],
                        dtype=np.float32).reshape(-1, self.dim)

    def article_vectors_of(self, chunk_ids: np.ndarray) -> np.ndarray:
        articles = [stored.chunk.article_id for stored, _ in self._chunk_rows(chunk_ids.tolist())]
        vectors = self._articles.get_many(articles, lambda missing: {
            row["article_id"]: np.asarray(row["vector"], dtype=np.float32)
            for row in self.store.client.query(self.store.name("articles"), filter=f"article_id in {json.dumps(missing)}",
                                               output_fields=["article_id", "vector"], consistency_level="Strong")})
        return np.array([vectors[a] if a in vectors else self._gone("article", a) for a in articles],
                        dtype=np.float32).reshape(-1, self.dim)

    def article_ids_of(self, chunk_ids: np.ndarray) -> np.ndarray:
        return np.array([stored.chunk.article_id for stored, _ in self._chunk_rows(chunk_ids.tolist())], dtype=object)

    def sentences_of(self, chunk_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows = self._chunk_rows(chunk_ids.tolist())
        counts = np.array([len(stored.sentence_ids) for stored, _ in rows], dtype=np.int64)
        flat = np.array([i for stored, _ in rows for i in stored.sentence_ids], dtype=np.int64)
        return flat, np.cumsum(counts) - counts

    def stored(self, chunk_id: int) -> StoredChunk:
        return self._chunk_rows([chunk_id])[0][0]

    def stored_of(self, chunk: Chunk) -> StoredChunk:
        key = (chunk.article_id, chunk.chunk_id)
        if key not in self._by_hash:
            rows = self.store.client.query(
                self.store.name("chunks"), output_fields=["id"], consistency_level="Strong",
                filter=f"article_id == {json.dumps(chunk.article_id)} and hash == {json.dumps(chunk.chunk_id)} "
                       f"and generation <= {self.meta['generation']}")
            if not rows:
                raise KeyError(key)
            self._by_hash.put(key, int(rows[0]["id"]))
        return self.stored(self._by_hash[key])

    def article_sentences(self, article_id: str) -> list[tuple[int, str]]:
        cached = self._article_sentences.get(article_id)
        if cached is not None:
            return cached
        sentences = sentences_in_order(
            stored_of_record(row["record"])
            for row in self.store.scan("chunks", ["record"], f"article_id == {json.dumps(article_id)} and "
                                                             f"generation <= {self.meta['generation']}"))
        self._article_sentences.put(article_id, sentences)
        return sentences


class MilvusLexicalScores:
    """A query's BM25 scores from Milvus (rag.storage.reader.LexicalScores).

    Milvus scores a text, each word with weight 1, so the query's terms are sent in groups of
    equal weight (the typed terms, the typo stand-ins) and the groups' scores added, each
    times its weight. Milvus's distances are BM25 scores up to sign (milvus-lite negates
    them), so their magnitude is taken.
    """

    def __init__(self, reader: MilvusReader, query_terms: Sequence[str], weights: Sequence[float],
                 expression: str) -> None:
        self.reader = reader
        self.expression = expression
        groups: dict[float, list[str]] = {}
        for term, weight in zip(query_terms, weights, strict=True):
            if reader.lexicon.knows(term):
                groups.setdefault(float(weight), []).append(term)
        self.groups = {weight: milvus_terms(words) for weight, words in groups.items()}
        self._scores: dict[int, float] = {}

    def _search(self, text: str, limit: int, expression: str) -> dict[int, float]:
        found = self.reader.store.client.search(
            self.reader.store.name("chunks"), data=[text], anns_field="sparse", limit=limit, filter=expression,
            output_fields=["id"], search_params={"metric_type": "BM25"}, consistency_level="Strong")
        return {int(hit["id"]): abs(float(hit["distance"])) for hit in found[0]}

    def top(self, depth: int) -> np.ndarray:
        if not self.groups:
            return np.zeros(0, dtype=np.int64)
        found = {weight: self._search(text, depth, self.expression) for weight, text in self.groups.items()}
        if len(found) == 1:  # one group (no typo stand-ins): its scores are already the totals
            (weight, scores), = found.items()
            self._scores.update({chunk_id: weight * score for chunk_id, score in scores.items()})
        ids = np.array(sorted(set().union(*found.values())), dtype=np.int64)
        scores = self.of(ids)
        keep = ids[scores > 0]
        best = np.argsort(-scores[scores > 0], kind="stable")[:depth]
        return np.sort(keep[best])

    def of(self, chunk_ids: np.ndarray) -> np.ndarray:
        wanted = [int(i) for i in chunk_ids.tolist() if int(i) not in self._scores]
        if wanted and self.groups:
            totals = dict.fromkeys(wanted, 0.0)
            for start in range(0, len(wanted), _BATCH):
                part = wanted[start:start + _BATCH]
                restricted = f"{self.expression} and id in {part}"
                for weight, text in self.groups.items():
                    for chunk_id, score in self._search(text, len(part), restricted).items():
                        totals[chunk_id] += weight * score
            self._scores.update(totals)
        return np.array([self._scores.get(int(i), 0.0) for i in chunk_ids.tolist()], dtype=np.float32)


def verify_milvus(store: str) -> list[str]:
    """Every problem found in the index on Milvus at `store`, one line each: an update that
    stopped half-way, or collections that disagree with the article table. Empty when sound."""
    try:
        connected = MilvusStore.connect(MilvusSettings.from_uri(store))
    except RagError as error:
        return [str(error)]
    try:
        reader = MilvusReader.open(connected)
        shown, generation = connected.settings.shown, reader.meta["generation"]
        if reader.hidden:  # its counts are in flux until the update is finished
            return [f"the last update of {shown} stopped half-way ({len(reader.hidden)} article(s) left out "
                    f"until it is finished): run `rag index --store {shown}` to finish it"]

        def count(collection: str) -> int:
            return int(connected.client.query(connected.name(collection), filter=f"generation <= {generation}",
                                              output_fields=["count(*)"], consistency_level="Strong")[0]["count(*)"])

        counts = {"chunks": (count("chunks"), reader.chunk_count),
                  "sentences": (count("sentences"), reader.manifest["counts"]["sentences"]),
                  "articles": (count("articles"), len(reader.manifest["articles"]))}
        return [f"{shown} holds {found} {name} where its article table says {expected}: "
                     f"rebuild it with `rag index --rebuild --store {shown}`"
                for name, (found, expected) in counts.items() if found != expected]
    except RagError as error:
        return [str(error)]
    finally:
        connected.close()
