"""Vectors by id that grow with the corpus: exact search while small, an HNSW graph when large.

Up to `EXACT_UP_TO` vectors a `VectorIndex` is exact: a flat inner-product index (in an
IndexIDMap2) that adds, removes and reads back by id. When an index larger than that is
written as a new base segment (rag.store), its vectors go into an HNSW graph instead (M=32,
efConstruction 40; searched with efSearch 1.5 x the depth asked for). A graph is never
changed once built: vectors added later go into a flat `tail` searched exactly beside it, and
vectors removed later are filtered out of its results, until those pass a quarter of the
graph and the next update builds a new one over what is live (a graph takes about 80 s for
100k chunks' vectors here; the tail costs nothing to change). Either way the exact vectors of
candidates are read back by id. Recall@10 against exact search is measured by bench/suite.py.
"""

from __future__ import annotations

import math
from pathlib import Path

import faiss
import numpy as np

EXACT_UP_TO = 10_000
GRAPH_NEIGHBOURS = 32
GRAPH_CONSTRUCTION_DEPTH = 40
GRAPH_SEARCH_FACTOR = 1.5
GRAPH_CHURN_LIMIT = 0.25


class VectorIndex:
    """Unit vectors by int64 id, searched by inner product.

    `main` is exact (flat) or a graph; `tail` holds what was added since the graph was built
    and `dead` the graph's ids removed since (both empty while `main` is exact).
    """

    def __init__(self, main: faiss.Index, tail: faiss.Index | None = None,
                 dead: np.ndarray | None = None) -> None:
        self.main = main
        self.is_graph = not isinstance(faiss.downcast_index(main.index), faiss.IndexFlat)
        self.tail = tail if tail is not None else _flat(main.d)
        self._set_dead(dead if dead is not None else np.zeros(0, dtype=np.int64))

    def _set_dead(self, dead: np.ndarray) -> None:
        self.dead = dead
        batch = faiss.IDSelectorBatch(dead) if len(dead) else None
        self._dead_selectors = () if batch is None else (batch, faiss.IDSelectorNot(batch))  # Python holds both

    @classmethod
    def empty(cls, dim: int) -> VectorIndex:
        return cls(_flat(dim))

    @classmethod
    def read(cls, path: Path) -> VectorIndex:
        """Read what `write` wrote (a graph's tail and removals sit beside it, if any)."""
        tail, dead = _tail_path(path), _dead_path(path)
        return cls(faiss.read_index(str(path)), faiss.read_index(str(tail)) if tail.exists() else None,
                   np.load(dead, allow_pickle=False) if dead.exists() else None)

    def write(self, path: Path) -> None:
        faiss.write_index(self.main, str(path))
        if self.tail.ntotal:
            faiss.write_index(self.tail, str(_tail_path(path)))
        if len(self.dead):
            np.save(_dead_path(path), self.dead, allow_pickle=False)

    @property
    def dim(self) -> int:
        return self.main.d

    @property
    def ntotal(self) -> int:
        return self.main.ntotal - len(self.dead) + self.tail.ntotal

    def kind(self) -> str:
        """How the index searches, as the manifest records it."""
        if not self.is_graph:
            return "exact"
        return (f"hnsw M={GRAPH_NEIGHBOURS} efConstruction={GRAPH_CONSTRUCTION_DEPTH} "
                f"efSearch={GRAPH_SEARCH_FACTOR:g}x depth, {self.main.ntotal} in the graph")

    def ids(self) -> np.ndarray:
        """Every live id, ascending."""
        ids = np.sort(np.concatenate([faiss.vector_to_array(index.id_map) for index in (self.main, self.tail)]))
        return ids[~np.isin(ids, self.dead)] if len(self.dead) else ids

    def vectors_of(self, ids: np.ndarray) -> np.ndarray:
        """The vectors of live ids, in the order given."""
        ids = np.asarray(ids, dtype=np.int64)
        if not self.tail.ntotal:
            return self.main.reconstruct_batch(ids)
        in_tail = np.isin(ids, faiss.vector_to_array(self.tail.id_map))
        out = np.empty((len(ids), self.dim), dtype=np.float32)
        if (~in_tail).any():
            out[~in_tail] = self.main.reconstruct_batch(ids[~in_tail])
        if in_tail.any():
            out[in_tail] = self.tail.reconstruct_batch(ids[in_tail])
        return out

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> None:
        (self.tail if self.is_graph else self.main).add_with_ids(vectors, ids)

    def remove(self, ids: np.ndarray) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        if not self.is_graph:
            self.main.remove_ids(ids)
            return
        in_tail = np.isin(ids, faiss.vector_to_array(self.tail.id_map))
        if in_tail.any():
            self.tail.remove_ids(ids[in_tail])
        self._set_dead(np.union1d(self.dead, ids[~in_tail]))

    def copy(self) -> VectorIndex:
        """A copy that can be changed while this one is searched (a graph is shared: it never changes)."""
        main = self.main if self.is_graph else faiss.clone_index(self.main)
        return VectorIndex(main, faiss.clone_index(self.tail), self.dead)

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
        if self.is_graph:
            return self.tail.ntotal + len(self.dead) > GRAPH_CHURN_LIMIT * self.main.ntotal
        return self.ntotal > EXACT_UP_TO

    def rebased(self) -> VectorIndex:
        """The live vectors in a fresh index: a graph past EXACT_UP_TO vectors, else exact."""
        if self.ntotal <= EXACT_UP_TO and not self.is_graph:
            return self
        ids = self.ids()
        vectors = self.vectors_of(ids)
        if len(ids) <= EXACT_UP_TO:
            rebased = VectorIndex.empty(self.dim)
            rebased.add(vectors, ids)
            return rebased
        graph = faiss.IndexHNSWFlat(self.dim, GRAPH_NEIGHBOURS, faiss.METRIC_INNER_PRODUCT)
        graph.hnsw.efConstruction = GRAPH_CONSTRUCTION_DEPTH
        main = faiss.IndexIDMap2(graph)
        main.add_with_ids(vectors, ids)
        return VectorIndex(main)

    def search(self, query: np.ndarray, depth: int, allowed: np.ndarray | None) -> np.ndarray:
        """Ids of the (about) `depth` nearest vectors, best first, restricted to `allowed`
        ids when given. A graph is searched exactly when the allowed ids are few enough."""
        if self.is_graph and allowed is not None and len(allowed) <= EXACT_UP_TO:
            return _exact_top(self.vectors_of(allowed) @ query, allowed, depth)
        found = [_search(self.main, query, depth, _selectors(allowed, self._dead_selectors), self.is_graph)]
        if self.tail.ntotal:
            found.append(_search(self.tail, query, depth, _selectors(allowed, ()), graph=False))
        ids = np.concatenate([ids for ids, _ in found])
        return _exact_top(np.concatenate([scores for _, scores in found]), ids, depth)


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
