"""Vectors by id that grow with the corpus: exact search while small, an HNSW graph when large.

Up to `EXACT_UP_TO` vectors a `VectorIndex` is exact: a flat inner-product index (in an
IndexIDMap2) that adds, removes and reads back by id. When an index larger than that is
written as a new base segment (rag.ingest.assemble, rag.storage.writer), its vectors go into an HNSW graph instead (M=32,
efConstruction 40; searched with efSearch 1.5 x the depth asked for). A graph is never
changed once built: vectors added later go into a flat `tail` searched exactly beside it, and
vectors removed later are filtered out of its results, until those pass a quarter of the
graph and the next update builds a new one over what is live (a graph takes about 80 s for
100k chunks' vectors here; the tail costs nothing to change). Either way the exact vectors of
candidates are read back by id. Recall@10 against exact search is measured by bench/suite.py.
"""

from __future__ import annotations

import errno
import math
import os
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path

import faiss
import numpy as np

from rag.errors import REBUILD_HINT, IndexCorruptError

EXACT_UP_TO = 10_000
GRAPH_NEIGHBOURS = 32
GRAPH_CONSTRUCTION_DEPTH = 40
GRAPH_SEARCH_FACTOR = 1.5
GRAPH_CHURN_LIMIT = 0.25


class VectorIndex:
    """Unit vectors by int64 id, searched by inner product.

    The vectors sit in an exact flat index or in a graph; `tail` holds what was added since
    the graph was built and `dead` the graph's ids removed since (both empty while exact).
    """

    def __init__(self, dim: int, flat: faiss.Index | None = None, graph: _Graph | None = None,
                 tail: faiss.Index | None = None, dead: np.ndarray | None = None) -> None:
        self.dim = dim
        self._flat = flat
        self._graph = graph
        self.is_graph = graph is not None
        self.tail = tail if tail is not None else _flat(dim)
        self._set_dead(dead if dead is not None else np.zeros(0, dtype=np.int64))

    def _set_dead(self, dead: np.ndarray) -> None:
        self.dead = dead
        batch = faiss.IDSelectorBatch(dead) if len(dead) else None
        self._dead_selectors = () if batch is None else (batch, faiss.IDSelectorNot(batch))  # Python holds both

    @property
    def _main(self) -> faiss.Index:
        return self._graph.index if self._graph is not None else self._flat

    @classmethod
    def empty(cls, dim: int) -> VectorIndex:
        return cls(dim, flat=_flat(dim))

    @classmethod
    def read(cls, path: Path, dim: int) -> VectorIndex:
        """Read what `write` wrote. A graph is only read when first searched or read back
        (a process that adds an article to a large index never needs it), or on `read_ahead`."""
        tail, dead = _tail_path(path), _dead_path(path)
        graph_ids = _ids_path(path)
        if graph_ids.exists():
            if not path.is_file():
                raise OSError(f"{path} is missing")
            main = {"graph": _Graph(np.load(graph_ids, allow_pickle=False), path=path)}
        else:
            main = {"flat": faiss.read_index(str(path))}
        return cls(dim, **main, tail=faiss.read_index(str(tail)) if tail.exists() else None,
                   dead=np.load(dead, allow_pickle=False) if dead.exists() else None)

    def read_ahead(self) -> None:
        """Start reading a graph from disk in the background, for a process about to search."""
        if self._graph is not None:
            self._graph.read_ahead()

    def write(self, path: Path) -> None:
        """Write the index to `path`, a graph's ids and changes beside it; OSError if it cannot be."""
        _write_faiss(self._main, path)
        if self._graph is not None:
            np.save(_ids_path(path), self._graph.ids, allow_pickle=False)
        if self.tail.ntotal:
            _write_faiss(self.tail, _tail_path(path))
        if len(self.dead):
            np.save(_dead_path(path), self.dead, allow_pickle=False)

    @property
    def ntotal(self) -> int:
        main = len(self._graph.ids) if self._graph is not None else self._flat.ntotal
        return main - len(self.dead) + self.tail.ntotal

    def kind(self) -> str:
        """How the index searches, as the manifest records it."""
        if self._graph is None:
            return "exact"
        return (f"hnsw M={GRAPH_NEIGHBOURS} efConstruction={GRAPH_CONSTRUCTION_DEPTH} "
                f"efSearch={GRAPH_SEARCH_FACTOR:g}x depth, {len(self._graph.ids)} in the graph")

    def ids(self) -> np.ndarray:
        """Every live id, ascending."""
        main = self._graph.ids if self._graph is not None else faiss.vector_to_array(self._flat.id_map)
        ids = np.sort(np.concatenate([main, faiss.vector_to_array(self.tail.id_map)]))
        return ids[~np.isin(ids, self.dead)] if len(self.dead) else ids

    def vectors_of(self, ids: np.ndarray) -> np.ndarray:
        """The vectors of live ids, in the order given."""
        ids = np.asarray(ids, dtype=np.int64)
        if not self.tail.ntotal:
            return self._main_vectors_of(ids)
        in_tail = self._in_tail(ids)
        out = np.empty((len(ids), self.dim), dtype=np.float32)
        if (~in_tail).any():
            out[~in_tail] = self._main_vectors_of(ids[~in_tail])
        if in_tail.any():
            out[in_tail] = self.tail.reconstruct_batch(ids[in_tail])
        return out

    def _main_vectors_of(self, ids: np.ndarray) -> np.ndarray:
        if self._graph is not None:  # rows of the graph's storage, read in place (ids ascending)
            return self._graph.vectors[np.searchsorted(self._graph.ids, ids)]
        return self._flat.reconstruct_batch(ids)

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        (self.tail if self.is_graph else self._flat).add_with_ids(vectors, ids)

    def remove(self, ids: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        if not self.is_graph:
            self._flat.remove_ids(ids)
            return
        in_tail = self._in_tail(ids)
        if in_tail.any():
            self.tail.remove_ids(ids[in_tail])
        self._set_dead(np.union1d(self.dead, ids[~in_tail]))

    def _in_tail(self, ids: np.ndarray) -> np.ndarray:
        return np.isin(ids, faiss.vector_to_array(self.tail.id_map))

    def copy(self) -> VectorIndex:
        """A copy that can be changed while this one is searched (a graph is shared: it never changes)."""
        flat = None if self._flat is None else faiss.clone_index(self._flat)
        return VectorIndex(self.dim, flat=flat, graph=self._graph, tail=faiss.clone_index(self.tail), dead=self.dead)

    def subset(self, ids: np.ndarray) -> VectorIndex:
        """An exact index of the given ids' vectors (what one segment holds)."""
        subset = VectorIndex.empty(self.dim)
        if len(ids):
            subset.add(self.vectors_of(ids), ids)
        return subset

    @property
    def needs_rebase(self) -> bool:
        """Whether an exact index has outgrown exact search, or a graph's later additions
        and removals pass a quarter of it."""
        if self._graph is not None:
            return self.tail.ntotal + len(self.dead) > GRAPH_CHURN_LIMIT * len(self._graph.ids)
        return self.ntotal > EXACT_UP_TO

    def rebased(self) -> VectorIndex:
        """The live vectors in a fresh index: a graph past EXACT_UP_TO vectors, else exact."""
        if self.ntotal <= EXACT_UP_TO and not self.is_graph:
            return self
        ids = self.ids()
        return VectorIndex.of(self.vectors_of(ids), ids)

    @classmethod
    def of(cls, vectors: np.ndarray, ids: np.ndarray) -> VectorIndex:
        """An index of these vectors: exact up to EXACT_UP_TO of them, else a graph built
        straight from them (no exact copy made first: at 2.8M vectors each copy is 4.3 GB)."""
        if len(ids) <= EXACT_UP_TO:
            index = cls.empty(vectors.shape[1])
            if len(ids):
                index.add(vectors, ids)
            return index
        graph = faiss.IndexHNSWFlat(vectors.shape[1], GRAPH_NEIGHBOURS, faiss.METRIC_INNER_PRODUCT)
        graph.hnsw.efConstruction = GRAPH_CONSTRUCTION_DEPTH
        index = faiss.IndexIDMap2(graph)
        with _faiss_threads(_cores()):
            index.add_with_ids(vectors, ids)
        return cls(vectors.shape[1], graph=_Graph(ids, index=index))

    def search(self, query: np.ndarray, depth: int, allowed: np.ndarray | None) -> np.ndarray:
        """Ids of the (about) `depth` nearest vectors, best first, restricted to `allowed`
        ids when given. A graph is searched exactly when the allowed ids are few enough."""
        if self.is_graph and allowed is not None and len(allowed) <= EXACT_UP_TO:
            return _exact_top(self.vectors_of(allowed) @ query, allowed, depth)
        with _faiss_threads(1):  # one query: more threads cost more than they save
            found = [_search(self._main, query, depth, _selectors(allowed, self._dead_selectors), self.is_graph)]
            if self.tail.ntotal:
                found.append(_search(self.tail, query, depth, _selectors(allowed, ()), graph=False))
        ids = np.concatenate([ids for ids, _ in found])
        return _exact_top(np.concatenate([scores for _, scores in found]), ids, depth)


class _Graph:
    """An HNSW graph (in an IndexIDMap2) and its ids, ascending; one read from disk is loaded
    on first use. Never changed once built, so copies of an index share it, and its vectors
    are read in place: row i of `vectors` is that of `ids[i]` (reconstructing by id through
    FAISS took half a millisecond a query)."""

    def __init__(self, ids: np.ndarray, index: faiss.Index | None = None, path: Path | None = None) -> None:
        self.ids = ids
        self._index = index
        self._path = path
        self._vectors: np.ndarray | None = None
        self._reading: Future | None = None
        self._lock = threading.Lock()

    @property
    def index(self) -> faiss.Index:
        with self._lock:
            if self._index is None:
                self._index = self._reading.result() if self._reading is not None else self._read()
            return self._index

    def read_ahead(self) -> None:
        """Start reading the graph on a background thread (FAISS reads without holding the
        GIL), so that a process about to search reads it while it loads everything else."""
        with self._lock:
            if self._index is None and self._reading is None:
                self._reading = Future()
                threading.Thread(target=self._read_into, args=(self._reading,), name="rag-graph-read",
                                 daemon=True).start()

    def _read_into(self, future: Future) -> None:
        try:
            future.set_result(self._read())
        except Exception as error:  # noqa: BLE001 - handed to the search that waits for the graph
            future.set_exception(error)

    def _read(self) -> faiss.Index:
        try:  # read, not mapped: a mapped graph's first searches each fault in its pages
            index = faiss.read_index(str(self._path))
        except RuntimeError as error:
            raise IndexCorruptError(f"vector graph {self._path} is damaged: {REBUILD_HINT}") from error
        if index.ntotal != len(self.ids):
            raise IndexCorruptError(f"vector graph {self._path} holds {index.ntotal} vectors, its id list "
                                    f"{len(self.ids)}: {REBUILD_HINT}")
        return index

    @property
    def vectors(self) -> np.ndarray:
        """The graph's vectors, a view of its FAISS storage (valid while the graph lives)."""
        if self._vectors is None:
            storage = faiss.downcast_index(faiss.downcast_index(self.index.index).storage)
            vectors = faiss.rev_swig_ptr(storage.get_xb(), len(self.ids) * storage.d).reshape(len(self.ids), -1)
            vectors.flags.writeable = False  # the graph never changes
            self._vectors = vectors
        return self._vectors


@contextmanager
def _faiss_threads(count: int) -> Iterator[None]:
    """Run FAISS on `count` threads in the calling thread, then as before. OpenMP keeps the
    count per thread, so a process-wide setting does not reach a web server's worker threads:
    there, one query searched on two FAISS threads read hybrid p95 36-40 ms against 18 ms on
    one (100k chunks); a graph of 40k vectors built in 17-18 s on two against 29-31 s on one."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(count)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _write_faiss(index: faiss.Index, path: Path) -> None:
    """Write a FAISS index, raising OSError if it is not all on disk. FAISS raises RuntimeError
    when a write fails, but only prints the error of its final flush (a full disk then leaves a
    truncated file), so the file's size is checked against a count of the bytes it serialises
    (17 ms for 100k vectors of 384 dimensions)."""
    try:
        faiss.write_index(index, str(path))
    except RuntimeError as error:
        reason = str(error).rpartition("failed: ")[2]  # without FAISS's C++ location and condition
        raise OSError(f"FAISS could not write {path.name}: {reason}") from error
    expected = 0

    def count(data: bytes) -> None:
        nonlocal expected
        expected += len(data)

    faiss.write_index(index, faiss.PyCallbackIOWriter(count))
    written = path.stat().st_size
    if written != expected:
        raise OSError(errno.ENOSPC, f"{path} was cut short at {written} of {expected} bytes, the disk may be full")


def _ids_path(path: Path) -> Path:
    return path.with_suffix(".ids.npy")


def _tail_path(path: Path) -> Path:
    return path.with_suffix(".tail.faiss")


def _dead_path(path: Path) -> Path:
    return path.with_suffix(".removed.npy")


def _flat(dim: int) -> faiss.Index:
    return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))


def _selectors(allowed: np.ndarray | None, not_dead: tuple[faiss.IDSelector, ...]) -> tuple[faiss.IDSelector, ...]:
    """The selectors a search applies, the one to pass last: FAISS holds raw pointers, so
    Python must hold every selector a combined one points to while the search runs."""
    if allowed is None:
        return not_dead
    batch = faiss.IDSelectorBatch(allowed)
    return (batch, *not_dead, faiss.IDSelectorAnd(batch, not_dead[-1])) if not_dead else (batch,)


def _search(index: faiss.Index, query: np.ndarray, depth: int, selectors: tuple[faiss.IDSelector, ...],
            graph: bool) -> tuple[np.ndarray, np.ndarray]:
    selector = selectors[-1] if selectors else None
    if graph:
        params = faiss.SearchParametersHNSW(sel=selector, efSearch=max(depth, math.ceil(GRAPH_SEARCH_FACTOR * depth)))
    else:
        params = faiss.SearchParameters(sel=selector)
    scores, ids = index.search(query.reshape(1, -1), min(depth, index.ntotal), params=params)
    found = ids[0] >= 0
    return ids[0][found], scores[0][found]


def _exact_top(scores: np.ndarray, ids: np.ndarray, depth: int) -> np.ndarray:
    if len(ids) > depth:
        top = np.argpartition(-scores, depth - 1)[:depth]
        ids, scores = ids[top], scores[top]
    return ids[np.argsort(-scores, kind="stable")]
