"""Approximate vector search on a built index's own vectors: latency and recall of each kind.

    .venv/bin/python bench/ann.py INDEX_DIR --scifact ../shared/eval/scifact
    .venv/bin/python bench/ann.py INDEX_DIR --scifact ../shared/eval/scifact --grow-to 1000000 --chosen-only

For the chunk vectors (searched at depth 100, as retrieval does) and the sentence vectors
(depth 200), one query at a time with SciFact train claims: exact search, IVF-flat as rag
used it before (4·√n lists, 1/8 probed), IVF over 8-bit and 16-bit codes, and HNSW graphs
(M 16 and 32) at a few efSearch values. Prints p50/p95 in ms, recall@10 and recall@depth
against exact search, and build seconds. This is how the graph and its settings were chosen
(docs/performance.md, "Vector search"; bench/results/ann-scifact.log).

`--grow-to N` measures at N chunks without building such an index: the index's vectors are
repeated, each copy moved off its original by Gaussian noise of norm `--noise` (default 1.0)
and renormalised, until there are N chunk vectors and as many sentence vectors per chunk as
the index has. At norm 1.0 a copy keeps cosine about 0.71 to its original and about 0.5 to
another copy of it, as texts on one topic do; at 0.5 (0.89, 0.8) the dozens of copies of each
vector are near-duplicates whose order is set by the noise alone. `--chosen-only` runs exact
search and the graph rag uses (M 32; efSearch 1.5x depth, and 3x and 6x, or `--factors`) only:
at a million chunks the others take an hour to build. `--kinds chunks` skips the sentences.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import faiss
import numpy as np

from rag.config import configure_process
from rag.encoders.minilm import default_embedder
from rag.eval.beir import load_qrels, load_queries
from rag.storage.layout import current_snapshot_dir
from rag.storage.snapshot import load_snapshot

Search = Callable[[np.ndarray], np.ndarray]


def measure(label: str, search: Search, queries: np.ndarray, exact: np.ndarray, build_s: float) -> None:
    for query in queries[:10]:
        search(query)
    samples, at_10, at_depth = [], [], []
    for query, truth in zip(queries, exact, strict=True):
        started = time.perf_counter()
        found = search(query)
        samples.append((time.perf_counter() - started) * 1000)
        at_10.append(len(set(found[:10].tolist()) & set(truth[:10].tolist())) / 10)
        at_depth.append(len(set(found.tolist()) & set(truth.tolist())) / len(truth))
    print(f"  {label:<34} p50 {np.percentile(samples, 50):6.2f}  p95 {np.percentile(samples, 95):6.2f} ms   "
          f"recall@10 {np.mean(at_10):.4f}  recall@{len(exact[0])} {np.mean(at_depth):.4f}   build {build_s:5.1f} s",
          flush=True)


def timed_build(build: Callable[[], faiss.Index]) -> tuple[faiss.Index, float]:
    started = time.perf_counter()
    index = build()
    return index, time.perf_counter() - started


def grown(vectors: np.ndarray, count: int, noise_norm: float) -> np.ndarray:
    """`count` unit vectors: `vectors`, then noisy copies of them (see the module docstring)."""
    rng = np.random.default_rng(0)
    out = np.empty((count, vectors.shape[1]), dtype=np.float32)
    for start in range(0, count, len(vectors)):
        block = vectors[: count - start].copy()
        if start:
            noise = rng.standard_normal(block.shape, dtype=np.float32)
            block += noise_norm * noise / np.linalg.norm(noise, axis=1, keepdims=True)
            block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start : start + len(block)] = block
    return out


def compare(name: str, vectors: np.ndarray, ids: np.ndarray, queries: np.ndarray, depth: int,
            chosen_only: bool, factors: list[float]) -> None:
    print(f"\n{name}: {len(ids)} vectors, depth {depth}", flush=True)
    dim, lists = vectors.shape[1], int(4 * np.sqrt(len(ids)))
    flat = faiss.IndexFlatIP(dim)
    flat.add(vectors)
    exact = ids[flat.search(queries, depth)[1]]
    measure("exact (flat)", lambda q, f=flat: ids[f.search(q[None], depth)[1][0]], queries, exact, 0.0)
    del flat
    if chosen_only:
        graph, seconds = timed_build(lambda: _graph(vectors, 32))
        for factor in factors:
            params = faiss.SearchParametersHNSW(efSearch=int(factor * depth))
            measure(f"hnsw M=32 efSearch={factor:g}x depth",
                    lambda q, p=params: ids[graph.search(q[None], depth, params=p)[1][0]], queries, exact, seconds)
        return
    sample = vectors[np.sort(np.random.default_rng(0).choice(len(ids), min(len(ids), 32 * lists), replace=False))]
    for label, quantiser in (("ivf-flat", None), ("ivf-sq8", faiss.ScalarQuantizer.QT_8bit),
                             ("ivf-fp16", faiss.ScalarQuantizer.QT_fp16)):
        def build_ivf(quantiser: int | None = quantiser) -> faiss.Index:
            coarse = faiss.IndexFlatIP(dim)
            ivf = (faiss.IndexIVFFlat(coarse, dim, lists, faiss.METRIC_INNER_PRODUCT) if quantiser is None else
                   faiss.IndexIVFScalarQuantizer(coarse, dim, lists, quantiser, faiss.METRIC_INNER_PRODUCT))
            ivf.cp.niter = 10
            ivf.train(sample)
            ivf.add(vectors)
            return ivf
        ivf, seconds = timed_build(build_ivf)
        params = faiss.SearchParametersIVF(nprobe=max(1, lists // 8))
        measure(f"{label} {lists} lists, 1/8 probed", lambda q, i=ivf, p=params: ids[i.search(q[None], depth, params=p)[1][0]],
                queries, exact, seconds)
    for neighbours in (16, 32):
        graph, seconds = timed_build(lambda neighbours=neighbours: _graph(vectors, neighbours))
        for factor in (1.0, 1.5, 2.0):
            params = faiss.SearchParametersHNSW(efSearch=int(factor * depth))
            measure(f"hnsw M={neighbours} efSearch={factor:g}x depth",
                    lambda q, g=graph, p=params: ids[g.search(q[None], depth, params=p)[1][0]], queries, exact, seconds)


def _graph(vectors: np.ndarray, neighbours: int) -> faiss.Index:
    graph = faiss.IndexHNSWFlat(vectors.shape[1], neighbours, faiss.METRIC_INNER_PRODUCT)
    graph.hnsw.efConstruction = 40
    graph.add(vectors)
    return graph


def main() -> None:
    configure_process()  # as the rag command runs: one BLAS thread, no network
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("index", type=Path)
    parser.add_argument("--scifact", type=Path, required=True)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--grow-to", type=int, default=0, metavar="CHUNKS",
                        help="measure at this many chunks, with noisy copies of the index's vectors")
    parser.add_argument("--noise", type=float, default=1.0, help="norm of the noise that moves each copy")
    parser.add_argument("--chosen-only", action="store_true", help="exact search and rag's graph only")
    parser.add_argument("--factors", type=float, nargs="+", default=[1.5, 3.0, 6.0],
                        help="with --chosen-only: efSearch values to measure, as multiples of the depth")
    parser.add_argument("--kinds", nargs="+", choices=("chunks", "sentences"), default=["chunks", "sentences"])
    args = parser.parse_args()
    snapshot = load_snapshot(current_snapshot_dir(args.index))
    texts = list(load_queries(args.scifact, load_qrels(args.scifact, "train")).values())[: args.queries]
    queries = default_embedder().embed(texts)
    print(f"{faiss.omp_get_max_threads()} threads; {len(queries)} SciFact train claims, one at a time")
    scale = args.grow_to / snapshot.chunk_vectors.ntotal if args.grow_to else 1.0
    for name, index, depth in (("chunks", snapshot.chunk_vectors, 100), ("sentences", snapshot.sentence_vectors, 200)):
        if name not in args.kinds:
            continue
        vectors = index.vectors_of(index.ids())
        if scale != 1.0:
            vectors = grown(vectors, round(scale * len(vectors)), args.noise)
        compare(name, vectors, np.arange(len(vectors)), queries, depth, args.chosen_only, args.factors)
        del vectors


if __name__ == "__main__":
    main()
