"""The vector index: exact while small, a graph with an exact tail and filtered removals when large."""

from __future__ import annotations

import threading

import faiss
import numpy as np
import pytest

from rag.errors import IndexCorruptError
from rag.storage.vectors import VectorIndex


@pytest.fixture
def small_threshold(monkeypatch):
    monkeypatch.setattr("rag.storage.vectors.EXACT_UP_TO", 500)


def unit_vectors(count: int, seed: int, dim: int = 32) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(count, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def exact_top(vectors: np.ndarray, ids: np.ndarray, query: np.ndarray, depth: int) -> list[int]:
    return ids[np.argsort(-(vectors @ query))[:depth]].tolist()


def graph_of(count: int) -> tuple[VectorIndex, np.ndarray, np.ndarray]:
    vectors, ids = unit_vectors(count, seed=1), np.arange(10, 10 + count, dtype=np.int64)
    index = VectorIndex.empty(vectors.shape[1])
    index.add(vectors, ids)
    return index.rebased(), vectors, ids


def test_an_index_past_the_threshold_becomes_a_graph_that_finds_the_exact_neighbours(small_threshold):
    small = VectorIndex.empty(32)
    small.add(unit_vectors(400, seed=1), np.arange(400))
    assert small.rebased().kind() == "exact" and not small.needs_rebase
    graph, vectors, ids = graph_of(2000)
    assert graph.kind().startswith("hnsw") and graph.ntotal == 2000
    queries = unit_vectors(20, seed=2)
    found = [len(set(graph.search(q, 10, None).tolist()) & set(exact_top(vectors, ids, q, 10))) for q in queries]
    assert np.mean(found) >= 9.5


def test_an_index_made_straight_from_vectors_is_exact_or_a_graph_by_the_same_threshold(small_threshold):
    """What a new index's base segment is built with, without an exact copy first."""
    assert VectorIndex.of(unit_vectors(400, seed=1), np.arange(400)).kind() == "exact"
    vectors, ids = unit_vectors(2000, seed=1), np.arange(10, 2010, dtype=np.int64)
    graph = VectorIndex.of(vectors, ids)
    assert graph.kind().startswith("hnsw") and graph.ntotal == 2000 and not graph.needs_rebase
    assert np.array_equal(graph.ids(), ids) and np.array_equal(graph.vectors_of(ids[::-7]), vectors[::-7])
    queries = unit_vectors(20, seed=2)
    found = [len(set(graph.search(q, 10, None).tolist()) & set(exact_top(vectors, ids, q, 10))) for q in queries]
    assert np.mean(found) >= 9.5


def test_a_graph_takes_additions_in_its_tail_and_never_returns_what_was_removed(small_threshold):
    graph, vectors, ids = graph_of(2000)
    extra = unit_vectors(5, seed=3)
    graph.add(extra, np.arange(5000, 5005))
    removed = np.array([ids[0], ids[1], 5001])
    graph.remove(removed)
    assert graph.ntotal == 2000 + 5 - 3
    assert not set(removed.tolist()) & set(graph.ids().tolist())
    for row, vector in enumerate(extra):
        if 5000 + row != 5001:
            assert graph.search(vector, 3, None)[0] == 5000 + row
    for row in (0, 1):
        assert ids[row] not in graph.search(vectors[row], 50, None)
    assert np.allclose(graph.vectors_of(np.array([5004, ids[7]])), np.stack([extra[4], vectors[7]]))


def test_a_graph_read_back_with_its_tail_and_removals_searches_alike(tmp_path, small_threshold):
    graph, _, _ = graph_of(2000)
    graph.add(unit_vectors(5, seed=3), np.arange(5000, 5005))
    graph.remove(np.array([10, 11, 5002]))
    graph.write(tmp_path / "v.faiss")
    again = VectorIndex.read(tmp_path / "v.faiss", dim=32)
    assert np.array_equal(again.ids(), graph.ids())
    for query in unit_vectors(10, seed=4):
        assert np.array_equal(again.search(query, 20, None), graph.search(query, 20, None))
    live = np.random.default_rng(5).permutation(graph.ids())
    assert np.array_equal(again.vectors_of(live), graph.vectors_of(live))


def test_a_graph_reads_back_the_vectors_it_was_built_from_in_any_order(small_threshold):
    graph, vectors, ids = graph_of(2000)
    order = np.random.default_rng(6).permutation(len(ids))
    assert np.array_equal(graph.vectors_of(ids[order]), vectors[order])


def test_changing_a_copy_leaves_the_searched_original_alone(small_threshold):
    graph, vectors, ids = graph_of(2000)
    copy = graph.copy()
    copy.remove(ids[:1])
    copy.add(unit_vectors(1, seed=5), np.array([9000]))
    assert graph.search(vectors[0], 1, None)[0] == ids[0]
    assert graph.ntotal == 2000 and 9000 not in graph.ids()


def test_a_graph_is_rebuilt_once_its_changes_pass_a_quarter_of_it(small_threshold):
    graph, _, ids = graph_of(2000)
    graph.remove(ids[:400])
    graph.add(unit_vectors(99, seed=6), np.arange(8000, 8099))
    assert not graph.needs_rebase
    graph.add(unit_vectors(2, seed=7), np.arange(8099, 8101))
    assert graph.needs_rebase
    rebuilt = graph.rebased()
    assert rebuilt.kind().startswith("hnsw") and not rebuilt.tail.ntotal and not len(rebuilt.dead)
    assert np.array_equal(rebuilt.ids(), graph.ids())


@pytest.mark.parametrize("allowed_count", [50, 1500])
def test_a_filtered_graph_search_returns_only_allowed_ids(small_threshold, allowed_count):
    """Few allowed ids are searched exactly; many go through the graph with a filter."""
    graph, vectors, ids = graph_of(2000)
    graph.remove(ids[:3])
    allowed = np.sort(np.random.default_rng(8).choice(ids, allowed_count, replace=False))
    for query in unit_vectors(5, seed=9):
        found = graph.search(query, 10, allowed)
        assert len(found) == 10 and set(found.tolist()) <= set(allowed.tolist()) - set(ids[:3].tolist())
    live = np.setdiff1d(allowed, ids[:3])
    query = vectors[np.searchsorted(ids, live[0])]
    assert graph.search(query, 1, allowed)[0] == live[0]


def test_a_graph_read_from_disk_is_loaded_only_when_searched(tmp_path, small_threshold):
    """Adding to a large index (what `rag index` does) never reads its graph; a damaged
    graph is reported when a search first needs it."""
    graph, vectors, ids = graph_of(2000)
    graph.write(tmp_path / "v.faiss")
    (tmp_path / "v.faiss").write_bytes(b"damaged")
    again = VectorIndex.read(tmp_path / "v.faiss", dim=32)
    again.add(unit_vectors(2, seed=10), np.array([7000, 7001]))
    again.remove(ids[:2])
    assert again.ntotal == 2000 and 7000 in again.ids() and ids[0] not in again.ids()
    assert np.allclose(again.vectors_of(np.array([7001])), unit_vectors(2, seed=10)[1:])
    with pytest.raises(IndexCorruptError, match=r"vector graph .*v.faiss is damaged: rebuild the index"):
        again.search(vectors[5], 10, None)


def test_a_graph_read_ahead_searches_alike_and_reports_damage_to_the_search(tmp_path, small_threshold):
    """Read ahead on a background thread, a graph answers as one read on first use; a read
    that fails there fails the search that needs the graph, not the thread."""
    graph, vectors, _ = graph_of(2000)
    graph.write(tmp_path / "v.faiss")
    ahead = VectorIndex.read(tmp_path / "v.faiss", dim=32)
    ahead.read_ahead()
    for query in unit_vectors(10, seed=11):
        assert np.array_equal(ahead.search(query, 20, None), graph.search(query, 20, None))
    (tmp_path / "v.faiss").write_bytes(b"damaged")
    damaged = VectorIndex.read(tmp_path / "v.faiss", dim=32)
    damaged.read_ahead()
    with pytest.raises(IndexCorruptError, match=r"vector graph .*v.faiss is damaged: rebuild the index"):
        damaged.search(vectors[5], 10, None)


def test_a_search_runs_faiss_on_one_thread_in_any_thread_and_leaves_its_count_alone(monkeypatch, small_threshold):
    """OpenMP keeps FAISS's thread count per thread: a web server's worker thread searched on
    every core until each search set its own (p95 twice as long at 100k chunks)."""
    graph, vectors, _ = graph_of(2000)
    seen, original = [], faiss.SearchParametersHNSW  # made inside the search, just before FAISS runs
    monkeypatch.setattr(faiss, "SearchParametersHNSW", lambda *args, **kwargs: (
        seen.append(faiss.omp_get_max_threads()), original(*args, **kwargs))[1])
    after: list[int] = []

    def in_a_worker() -> None:
        faiss.omp_set_num_threads(2)
        graph.search(vectors[0], 10, None)
        after.append(faiss.omp_get_max_threads())

    worker = threading.Thread(target=in_a_worker)
    worker.start()
    worker.join()
    assert seen == [1] and after == [2]
