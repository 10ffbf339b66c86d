"""FAISS vector indexes that grow with the corpus: exact search while small, IVF when large.

Up to `EXACT_UP_TO` vectors an index is exact (flat inner product in an IndexIDMap2). Past
that, an update turns it into an inverted-file index (IndexIVFFlat: 4·√n lists, k-means on
a sample, a hash-table id map so vectors can still be read back and removed by id) that
searches `nlist / PROBE_DIVISOR` lists. Both keep the full vectors, so exact cosines of
candidates are still read back, and both add and remove by id, so incremental updates work
the same on either. Recall@10 of IVF against exact search is measured by bench/suite.py.
"""

from __future__ import annotations

import faiss
import numpy as np

EXACT_UP_TO = 50_000
PROBE_DIVISOR = 8
_TRAINING_POINTS_PER_LIST = 32
_KMEANS_ITERATIONS = 10


def empty_vectors(dim: int) -> faiss.Index:
    return faiss.IndexIDMap2(faiss.IndexFlatIP(dim))


def kind(index: faiss.Index) -> str:
    """How the index searches, as the manifest records it."""
    if isinstance(index, faiss.IndexIVFFlat):
        return f"ivf-flat nlist={index.nlist} nprobe={index.nprobe}"
    return "exact"


def grown(index: faiss.Index) -> faiss.Index:
    """The index itself, or, once an exact one holds more than EXACT_UP_TO vectors, the same
    vectors and ids in an IVF index trained on them."""
    if isinstance(index, faiss.IndexIVFFlat) or index.ntotal <= EXACT_UP_TO:
        return index
    ids = vector_ids(index)
    vectors = index.reconstruct_batch(ids)
    lists = int(4 * np.sqrt(len(ids)))
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(index.d), index.d, lists, faiss.METRIC_INNER_PRODUCT)
    ivf.cp.niter = _KMEANS_ITERATIONS
    sample = np.random.default_rng(0).choice(len(ids), min(len(ids), lists * _TRAINING_POINTS_PER_LIST), replace=False)
    ivf.train(vectors[np.sort(sample)])
    ivf.set_direct_map_type(faiss.DirectMap.Hashtable)
    ivf.add_with_ids(vectors, ids)
    ivf.nprobe = max(1, lists // PROBE_DIVISOR)
    return ivf


def vector_ids(index: faiss.Index) -> np.ndarray:
    """Every id the index holds."""
    if not index.ntotal:
        return np.zeros(0, dtype=np.int64)
    if isinstance(index, faiss.IndexIVFFlat):
        lists = index.invlists
        return np.concatenate([faiss.rev_swig_ptr(lists.get_ids(number), lists.list_size(number)).copy()
                               for number in range(index.nlist) if lists.list_size(number)])
    return faiss.vector_to_array(index.id_map).astype(np.int64)


def search(index: faiss.Index, query: np.ndarray, depth: int, allowed: np.ndarray | None) -> np.ndarray:
    """Ids of the (about) `depth` nearest vectors, restricted to `allowed` ids when given."""
    selector = None if allowed is None else faiss.IDSelectorBatch(allowed)
    if isinstance(index, faiss.IndexIVFFlat):
        params = faiss.SearchParametersIVF(sel=selector, nprobe=index.nprobe)
    else:
        params = faiss.SearchParameters(sel=selector)
    _, ids = index.search(query.reshape(1, -1), min(depth, index.ntotal), params=params)
    return ids[0][ids[0] >= 0]
